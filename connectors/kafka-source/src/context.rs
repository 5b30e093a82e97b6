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
/// Keys and payloads are copied out of librdkafka's buffers into arena
/// chunks, and the records' [`Bytes`] are slices of them: a few allocations
/// per batch instead of two per record. A chunk is never grown (growing one
/// copied every byte already in it again); when the next record does not
/// fit, a new chunk starts.
#[derive(Default)]
pub(crate) struct Gather {
    batches: Vec<Pending>,
    /// Index of the batch the previous record went to (records come in
    /// runs of one partition, so this is usually the right one).
    last: usize,
    records: usize,
    /// Interned topic names, so that a record costs no allocation for them.
    topics: HashSet<Arc<str>>,
    /// Filled arena chunks of this batch.
    full: Vec<Vec<u8>>,
    /// The arena chunk being filled.
    arena: Vec<u8>,
    /// Key and payload bytes gathered in this batch.
    bytes: usize,
    /// Key and payload bytes of the previous batch: the first chunk of the
    /// next one is that large (up to [`ARENA_CHUNK`]), so that a trickle of
    /// small batches does not hold a large chunk each.
    bytes_hint: usize,
    /// Records per partition in the previous batch: a partition's record
    /// list starts that large.
    records_hint: usize,
    /// Whether records carry a copy of their headers. Reading a message's
    /// headers costs librdkafka an allocation even when it has none.
    pub(crate) headers: bool,
}

/// Largest arena chunk (a larger key and payload get a chunk of their own).
const ARENA_CHUNK: usize = 1 << 20;

/// Smallest arena chunk.
const ARENA_MIN_CHUNK: usize = 4 << 10;

/// One partition's records, their keys and payloads still spans of the arena.
struct Pending {
    batch: SourceBatch,
    /// Per record: where its key and payload are in the arena.
    spans: Vec<Spans>,
}

/// Where a record's key and payload are: the arena chunk and the ranges in
/// it (`None`: null).
struct Spans {
    chunk: usize,
    key: Option<Range<usize>>,
    payload: Option<Range<usize>>,
}

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
                            records: Vec::with_capacity(self.records_hint),
                        },
                        spans: Vec::with_capacity(self.records_hint),
                    });
                    self.batches.len() - 1
                }
            },
        };
        self.last = index;
        let (key, payload) = (msg.key(), msg.payload());
        let need = key.map_or(0, <[u8]>::len) + payload.map_or(0, <[u8]>::len);
        if self.arena.capacity() - self.arena.len() < need {
            // Chunks grow with the batch, from the previous batch's size.
            let size = self
                .bytes_hint
                .max(self.bytes)
                .clamp(ARENA_MIN_CHUNK, ARENA_CHUNK)
                .max(need);
            let filled = mem::replace(&mut self.arena, Vec::with_capacity(size));
            if !filled.is_empty() {
                self.full.push(filled);
            }
        }
        self.bytes += need;
        let arena = &mut self.arena;
        let mut copy = |bytes: Option<&[u8]>| {
            bytes.map(|b| {
                let start = arena.len();
                arena.extend_from_slice(b);
                start..arena.len()
            })
        };
        let spans = Spans {
            chunk: self.full.len(),
            key: copy(key),
            payload: copy(payload),
        };
        let pending = &mut self.batches[index];
        debug_assert!(pending.batch.last_offset().is_none_or(|o| o < msg.offset()));
        pending.batch.records.push(RawRecord {
            offset: msg.offset(),
            timestamp_ms: msg.timestamp_ms(),
            key: None,
            payload: None,
            headers: if self.headers {
                msg.headers()
            } else {
                Vec::new()
            },
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
        self.last = 0;
        if self.records == 0 {
            // Nothing gathered, or all of it discarded: keep the hints and
            // the current chunk's memory.
            self.batches.clear();
            self.full.clear();
            self.arena.clear();
            self.bytes = 0;
            return Vec::new();
        }
        self.records_hint = self.records / self.batches.len();
        self.records = 0;
        self.bytes_hint = mem::take(&mut self.bytes);
        let mut chunks: Vec<Bytes> = self.full.drain(..).map(Bytes::from).collect();
        chunks.push(Bytes::from(mem::take(&mut self.arena)));
        mem::take(&mut self.batches)
            .into_iter()
            .map(|Pending { mut batch, spans }| {
                for (record, spans) in batch.records.iter_mut().zip(spans) {
                    let chunk = &chunks[spans.chunk];
                    record.key = spans.key.map(|r| chunk.slice(r));
                    record.payload = spans.payload.map(|r| chunk.slice(r));
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

#[cfg(test)]
mod tests {
    use tributary_core::Header;

    use super::*;

    struct Message {
        partition: i32,
        offset: i64,
        key: Option<Vec<u8>>,
        payload: Option<Vec<u8>>,
    }

    impl Polled for Message {
        fn topic(&self) -> &str {
            "t"
        }
        fn partition(&self) -> i32 {
            self.partition
        }
        fn offset(&self) -> i64 {
            self.offset
        }
        fn timestamp_ms(&self) -> Option<i64> {
            Some(self.offset * 10)
        }
        fn key(&self) -> Option<&[u8]> {
            self.key.as_deref()
        }
        fn payload(&self) -> Option<&[u8]> {
            self.payload.as_deref()
        }
        fn headers(&self) -> Vec<Header> {
            vec![Header {
                key: format!("h{}", self.offset),
                value: None,
            }]
        }
    }

    /// Message `i`: partition `i % 3`, a key on every other one, a payload
    /// of `size(i)` bytes (null for every seventh).
    fn message(i: i64, size: impl Fn(i64) -> usize) -> Message {
        Message {
            partition: (i % 3) as i32,
            offset: i,
            key: (i % 2 == 0).then(|| format!("k{i}").into_bytes()),
            payload: (i % 7 != 3).then(|| vec![(i % 251) as u8; size(i)]),
        }
    }

    /// Gathers messages `range` and checks every record against its message.
    fn gather_and_check(
        gather: &mut Gather,
        range: std::ops::Range<i64>,
        size: impl Fn(i64) -> usize + Copy,
    ) {
        for i in range.clone() {
            gather.push(&message(i, size));
        }
        assert_eq!(gather.len(), range.clone().count());
        let batches = gather.take();
        assert_eq!(gather.len(), 0);
        let mut seen = 0;
        for batch in &batches {
            assert!(batch.records.windows(2).all(|w| w[0].offset < w[1].offset));
            for r in &batch.records {
                let m = message(r.offset, size);
                assert_eq!(batch.partition.partition, m.partition);
                assert_eq!(r.timestamp_ms, Some(r.offset * 10));
                assert_eq!(r.key.as_deref(), m.key.as_deref(), "key of {}", r.offset);
                assert_eq!(
                    r.payload.as_deref(),
                    m.payload.as_deref(),
                    "payload of {}",
                    r.offset
                );
                assert_eq!(
                    r.headers.len(),
                    usize::from(gather.headers),
                    "{:?}",
                    r.headers
                );
                seen += 1;
            }
        }
        assert_eq!(seen, range.count());
    }

    #[test]
    fn records_keep_their_bytes_across_arena_chunks() {
        let mut gather = Gather::default();
        // Small batches, then ones larger than a chunk, with payloads from
        // empty to over a chunk each.
        gather_and_check(&mut gather, 0..10, |i| i as usize);
        gather_and_check(&mut gather, 10..3_000, |i| (i as usize * 37) % 2_000);
        gather_and_check(&mut gather, 3_000..3_010, |i| {
            if i % 4 == 0 {
                ARENA_CHUNK + 5
            } else {
                300
            }
        });
        gather_and_check(&mut gather, 3_010..3_020, |_| 0);
        gather.headers = true;
        gather_and_check(&mut gather, 3_020..5_000, |i| (i as usize * 13) % 700);
    }

    #[test]
    fn discarded_records_are_not_taken() {
        let mut gather = Gather::default();
        for i in 0..30 {
            gather.push(&message(i, |_| 100));
        }
        gather.discard(|p| p.partition != 1);
        let batches = gather.take();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].records.len(), 10);
        assert_eq!(
            batches[0].records[0].payload.as_deref(),
            Some(&[1u8; 100][..])
        );
        gather.discard(|_| true);
        assert!(gather.take().is_empty());
        gather_and_check(&mut gather, 30..40, |_| 10);
    }
}
